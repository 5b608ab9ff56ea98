"""The only kafka-python code: codecs, consumer, producer, admin, embedded broker."""
