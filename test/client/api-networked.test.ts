/**
 * The API suite (api-suite.ts) against the networked client: three DkvNodes in this process
 * (test/client/fixture.ts), three partition groups, a DkvClient over TCP.
 */
import { apiSuite } from './api-suite.js';
import { InProcCluster } from './fixture.js';

apiSuite('networked, 3 nodes', async () => {
  const cluster = await InProcCluster.start({ partitions: 3 });
  const client = await cluster.client();
  return { client, close: () => cluster.close() };
});
