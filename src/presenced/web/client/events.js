/** What the client emits: its own events about the connection and the session, and the
 * server's events by their wire type. */
export {};
