/** The client's options. Times are in milliseconds. */
export {};
