"""Websocket routes."""

from django.urls import path

from docpeer.consumers import DocumentConsumer

websocket_urlpatterns = [path("ws/documents/", DocumentConsumer.as_asgi())]
