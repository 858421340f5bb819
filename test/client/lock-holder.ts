/**
 * A lock holder for test/client/lock-kill.test.ts, run as its own process:
 *
 *     node --import tsx test/client/lock-holder.ts SERVERS LOCK KEY TTL_MS
 *
 * It acquires LOCK through DkvClient, prints `{"token":T,"lease":ID}` on one line, then keeps
 * writing KEY with fenced puts, printing `{"wrote":N}` (or `{"error":CODE}`) per put, until
 * it is killed.
 */
import { DkvClient } from '../../src/client/client.js';
import { isDkvError } from '../../src/errors.js';

const [servers, lockName, key, ttlText] = process.argv.slice(2);
if (!servers || !lockName || !key || !ttlText) {
  process.stderr.write('usage: lock-holder.ts SERVERS LOCK KEY TTL_MS\n');
  process.exit(2);
}
const say = (o: unknown): void => {
  process.stdout.write(`${JSON.stringify(o)}\n`);
};
const client = await DkvClient.connect({ servers: servers.split(','), requestTimeoutMs: 5000 });
const lock = await client.lock.acquire(lockName, { ttlMs: Number(ttlText) });
say({ token: lock.token, lease: lock.lease.id });
for (let n = 0; ; n++) {
  try {
    await client.put(key, { holder: process.pid, token: lock.token, n }, { fence: lock.fence });
    say({ wrote: n });
  } catch (err) {
    say({ error: isDkvError(err) ? err.code : String(err) });
  }
  await new Promise((r) => setTimeout(r, 50));
}
