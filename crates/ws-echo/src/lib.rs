//! ws-echo: the WebSocket echo server every behaviour test talks to through an ingress.
