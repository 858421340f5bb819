import { type ConfChange, ConfChangeTransition, ConfChangeType } from './types.js';

const transitions: ReadonlySet<string> = new Set(Object.values(ConfChangeTransition));
const changeTypes: ReadonlySet<string> = new Set(Object.values(ConfChangeType));

/** encodeConfChange turns a ConfChange into an entry payload (UTF-8 JSON: small and rare). */
export function encodeConfChange(cc: ConfChange): Uint8Array {
  return new TextEncoder().encode(
    JSON.stringify({
      t: cc.transition,
      c: cc.changes.map((ch) => [ch.type, ch.nodeId]),
      x: cc.context,
    }),
  );
}

/**
 * decodeConfChange parses an entry payload written by encodeConfChange. An empty payload is
 * the empty change that leaves a joint configuration. Malformed input throws a TypeError.
 */
export function decodeConfChange(data: Uint8Array): ConfChange {
  if (data.length === 0) return { transition: ConfChangeTransition.Auto, changes: [], context: '' };
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(data));
  } catch (err) {
    throw new TypeError(`conf change: not valid JSON (${err instanceof Error ? err.message : String(err)})`);
  }
  if (typeof raw !== 'object' || raw === null) throw new TypeError('conf change: not an object');
  const { t, c, x } = raw as { t?: unknown; c?: unknown; x?: unknown };
  if (typeof t !== 'string' || !transitions.has(t))
    throw new TypeError(`conf change: bad transition ${String(t)}`);
  if (!Array.isArray(c)) throw new TypeError('conf change: changes is not an array');
  if (typeof x !== 'string') throw new TypeError('conf change: context is not a string');
  const changes = c.map((pair: unknown) => {
    if (!Array.isArray(pair) || pair.length !== 2) throw new TypeError('conf change: bad change');
    const [type, nodeId] = pair as [unknown, unknown];
    if (typeof type !== 'string' || !changeTypes.has(type))
      throw new TypeError(`conf change: bad type ${String(type)}`);
    if (typeof nodeId !== 'number' || !Number.isSafeInteger(nodeId) || nodeId <= 0) {
      throw new TypeError(`conf change: bad node id ${String(nodeId)}`);
    }
    return { type: type as ConfChangeType, nodeId };
  });
  return { transition: t as ConfChangeTransition, changes, context: x };
}
