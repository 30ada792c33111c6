"""Models to bytes and back: serializers, the safe unpickler, trusted imports, torch weights."""
