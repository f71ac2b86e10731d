"""Request and response shapes, and the conversion between BSON documents and the API's JSON.

Imports nothing of `service` or `handlers`. The `*_out` functions read stored documents strictly
(`common.Unreadable` for one that does not have the service's shape); `service/stored.py` decides
what a route or a stream does with such a document.
"""
