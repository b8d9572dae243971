"""Compatibility: the WebSocket client moved to :mod:`geetcd.transport.websocket`."""

from geetcd.transport.websocket import WebSocket, open_websocket

__all__ = ["WebSocket", "open_websocket"]
