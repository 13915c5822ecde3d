"""One module per stack; constructs used by one stack live beside it."""
