/** Sans-I/O codecs (no sockets): usable by clients in other runtimes, tests and benchmarks. */
export {
  V1Decoder,
  V1Opcode,
  FLAG_HEADER,
  encodeFrame as encodeV1Frame,
  encodeBody,
  encodeClose as encodeV1Close,
  decodeClose,
  parseBody,
} from './v1.js';
export type { V1BodyParts, V1FrameHandler, V1Limits } from './v1.js';
export { LenDecoder, encodeLen } from './len.js';
export { parseHeader, stampHeader } from './header.js';
export type { MetadataHeader, ServerStamp } from './header.js';
export {
  WsReceiver,
  WsOpcode,
  encodeFrame as encodeWsFrame,
  encodeClosePayload,
  isValidCloseCode,
  headerSize,
  writeHeader,
} from './ws-frame.js';
export type { WsReceiverHandler, WsLimits } from './ws-frame.js';
export { validateUpgrade, acceptKey, upgradeResponse, SUBPROTOCOL_V1 } from './ws-handshake.js';
export { Utf8Validator, isUtf8 } from './utf8.js';
