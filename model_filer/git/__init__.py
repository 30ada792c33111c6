"""Everything git: its calls and one object reader, history, remote gc, remote approvals.

Also the set-up of plain git hooks and of the registry merge driver.
"""
