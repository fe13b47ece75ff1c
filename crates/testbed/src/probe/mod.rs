//! The probe: a WebSocket client for tests that records a timeline of each connection.
