/**
 * dkv: the public package entry point. Today it exposes the error catalogue; the client
 * library (`DkvClient`) is added here when it lands.
 */
export { DkvError, type DkvErrorDetails, ErrorCode, isDkvError, isErrorCode } from './errors.js';
