"""Transfer syntaxes for outgoing objects, and conversion between them."""
