"""Request and response shapes, and the conversion between BSON documents and the API's JSON."""
