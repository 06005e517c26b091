// Under tsx (tests, benchmarks) a worker thread's TypeScript module starts through this file
// (src/worker-thread.ts): a worker does not take its parent's loader, and a bootstrap given as
// code (`eval`) breaks native addons that find their files from the caller's stack (usearch,
// through `bindings`, then never returns). The module to run is the worker's last argv.
import { register } from 'tsx/esm/api';

register();
await import(process.argv[process.argv.length - 1]);
