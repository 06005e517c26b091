import client from 'prom-client';

/** Prometheus instruments for one server process (served at GET /metrics). */
export class Metrics {
  readonly registry = new client.Registry();

  readonly requests = new client.Counter({
    name: 'marquee_http_requests_total',
    help: 'HTTP requests by route, method and status code',
    labelNames: ['route', 'method', 'status'] as const,
    registers: [this.registry],
  });

  readonly requestSeconds = new client.Histogram({
    name: 'marquee_http_request_duration_seconds',
    help: 'HTTP request latency by route',
    labelNames: ['route', 'method'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  readonly requestTimeouts = new client.Counter({
    name: 'marquee_http_request_timeouts_total',
    help: 'Connections cut off with 408 because a request did not arrive in time: headers within MARQUEE_HEADERS_TIMEOUT_MS, headers and body within MARQUEE_REQUEST_TIMEOUT_MS',
    registers: [this.registry],
  });

  readonly embedSeconds = new client.Histogram({
    name: 'marquee_embedding_batch_duration_seconds',
    help: 'Model forward time per batch',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });

  readonly batchSize = new client.Histogram({
    name: 'marquee_embedding_batch_size',
    help: 'Images per embedding batch',
    buckets: [1, 2, 4, 8, 16, 32, 64],
    registers: [this.registry],
  });

  readonly queueDepth = new client.Gauge({
    name: 'marquee_embedding_queue_depth',
    help: 'Images waiting for the next embedding batch',
    registers: [this.registry],
  });

  readonly catalogSize = new client.Gauge({
    name: 'marquee_catalog_posters',
    help: 'Posters in the catalog',
    registers: [this.registry],
  });

  readonly activeModel = new client.Gauge({
    name: 'marquee_active_model_info',
    help: 'The active model version (value 1)',
    labelNames: ['version'] as const,
    registers: [this.registry],
  });

  readonly decodeBudget = new client.Gauge({
    name: 'marquee_decode_budget_bytes',
    help: 'Memory that images being decoded may take at once (MARQUEE_DECODE_BUDGET_MB)',
    registers: [this.registry],
  });

  readonly decodeBytes = new client.Gauge({
    name: 'marquee_decode_bytes_in_use',
    help: 'Memory taken by images being decoded now, as admitted from their headers',
    registers: [this.registry],
  });

  readonly decodePeakBytes = new client.Gauge({
    name: 'marquee_decode_bytes_peak',
    help: 'The most memory images being decoded have taken at once since the start',
    registers: [this.registry],
  });

  readonly decodeWaiting = new client.Gauge({
    name: 'marquee_decode_waiting',
    help: 'Images waiting for room in the decode budget',
    registers: [this.registry],
  });

  readonly decodeRefusals = new client.Counter({
    name: 'marquee_decode_refusals_total',
    help: 'Uploads refused with 503 because the decode budget stayed full for as long as a request may wait',
    registers: [this.registry],
  });

  constructor() {
    client.collectDefaultMetrics({ register: this.registry, prefix: 'marquee_process_' });
  }

  setActiveModel(version: string): void {
    this.activeModel.reset();
    this.activeModel.set({ version }, 1);
  }
}
