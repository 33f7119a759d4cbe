"""Authentication and authorization at the HTTP edge: credentials, /v2 token auth."""
