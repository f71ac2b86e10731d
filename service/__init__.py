"""Murmuration: a realtime document service on Sanic and MongoDB."""
