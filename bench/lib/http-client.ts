import { Agent, request } from 'node:http';

/** A response read whole: what a latency bench times. */
export interface ClientResponse {
  status: number;
  text: string;
}

/** The two ways a bench sends a request: a URL and, for a POST, a JSON body. */
export interface BenchClient {
  name: string;
  get(url: string): Promise<ClientResponse>;
  postJson(url: string, body: unknown): Promise<ClientResponse>;
}

/** fetch (undici), as most Node clients call a service; its request body costs it about 0.15 ms more than a GET (bench/results/recommend.md). */
export const fetchClient: BenchClient = {
  name: 'fetch',
  async get(url) {
    const response = await fetch(url);
    return { status: response.status, text: await response.text() };
  },
  async postJson(url, body) {
    const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: response.status, text: await response.text() };
  },
};

/**
 * node:http over one kept-alive connection: the least a client adds, and the same for a GET and a
 * POST, so that what it measures is the server.
 */
export function nodeHttpClient(): BenchClient & { close(): void } {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const send = (method: string, url: string, body?: string) =>
    new Promise<ClientResponse>((resolve, reject) => {
      const headers: Record<string, string | number> = body === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) };
      const outgoing = request(url, { method, agent, headers }, (incoming) => {
        const chunks: Buffer[] = [];
        incoming.on('data', (chunk: Buffer) => chunks.push(chunk));
        incoming.on('end', () => resolve({ status: incoming.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        incoming.on('error', reject);
      });
      outgoing.on('error', reject);
      outgoing.end(body);
    });
  return {
    name: 'node:http',
    get: (url) => send('GET', url),
    postJson: (url, body) => send('POST', url, JSON.stringify(body)),
    close: () => agent.destroy(),
  };
}
