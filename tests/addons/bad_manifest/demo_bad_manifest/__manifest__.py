["not", "a", "dict"]
