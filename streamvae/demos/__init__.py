"""The demos: the whole path on embedded parts (broker, tracking store), one per input kind."""
