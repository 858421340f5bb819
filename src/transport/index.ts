/**
 * The transport layer: framing, node-to-node peer links, and the client protocol (RPC with
 * streams). It uses node:net through a SocketFactory seam, so TLS can be swapped in.
 */
export { Backoff, checkReconnectPolicy, type ReconnectPolicy } from './backoff.js';
export {
  arrayHeaderBytes,
  checkFrameBytesMax,
  encodeArrayFrame,
  encodeBody,
  encodeFrame,
  FRAME_BYTES_LIMIT,
  FRAME_HEADER_BYTES,
  FrameDecoder,
  type FrameDecoderOptions,
  FrameError,
} from './frame.js';
export {
  CLUSTER_ID_LENGTH_MAX,
  PEER_PROTOCOL_VERSION,
  type PeerLinkStats,
  type PeerState,
  PeerTransport,
  type PeerTransportOptions,
} from './peer-links.js';
export {
  type CallOptions,
  RpcClient,
  type RpcClientOptions,
  RpcStream,
  type StreamOptions,
} from './rpc-client.js';
export {
  checkRequest,
  checkResponse,
  ERROR_MESSAGE_LENGTH_MAX,
  errorFromWire,
  errorToWire,
  isRequestId,
  OP_LENGTH_MAX,
  type RequestFrame,
  type ResponseFrame,
  type WireError,
} from './rpc-protocol.js';
export {
  type OpKind,
  type RpcContext,
  type RpcHandlers,
  RpcServer,
  type RpcServerOptions,
  type RpcServerStats,
  type StreamSink,
} from './rpc-server.js';
export {
  type Address,
  boundAddress,
  describeError,
  type LogFn,
  type LogLevel,
  listenOn,
  noLog,
  remoteOf,
  type SocketFactory,
  tcpSockets,
} from './sockets.js';
