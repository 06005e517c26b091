/**
 * The environment of the Python processes the server starts (the training package, and
 * scripts/python-env.sh that installs it): an allow-list, not the server's whole environment,
 * which holds secrets a child has no use for (MARQUEE_ADMIN_TOKEN, TMDB_API_KEY, TMDB_BEARER_TOKEN,
 * and whatever else a deployment sets). A training package that is compromised, or a dependency of
 * it, learns only what is below.
 */

/** Variables passed by name: the basics of a process, proxies and certificates for pip and downloads, and what the training package reads. */
const NAMES = new Set([
  'PATH', 'HOME', 'USER', 'LOGNAME', 'SHELL', 'LANG', 'LANGUAGE', 'TZ', 'TERM', 'TMPDIR', 'TMP', 'TEMP',
  'XDG_CACHE_HOME', 'LD_LIBRARY_PATH', 'LD_PRELOAD',
  'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'ALL_PROXY', 'http_proxy', 'https_proxy', 'no_proxy', 'all_proxy',
  'SSL_CERT_FILE', 'SSL_CERT_DIR', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE',
  // Read by the training package: its caches, nsfwjs's files, the venv; torch.distributed's rendezvous for multi-node training.
  'MARQUEE_CACHE', 'MARQUEE_NSFWJS', 'MARQUEE_VENV', 'MASTER_ADDR', 'MASTER_PORT', 'NODE_RANK', 'WORLD_SIZE', 'LOCAL_RANK',
]); // prettier-ignore

/** Variables passed by prefix: locale, Python and pip, CUDA and its libraries, thread pools, torch and Lightning. */
const PREFIXES = ['LC_', 'PYTHON', 'PIP_', 'CUDA', 'CUDNN_', 'NVIDIA_', 'NCCL_', 'TORCH_', 'PL_', 'GLOO_', 'OMP_', 'MKL_', 'KMP_', 'OPENBLAS_'];

/** Whether a variable of the server's environment is passed to a Python child. */
export function passedToChild(name: string): boolean {
  return NAMES.has(name) || PREFIXES.some((prefix) => name.startsWith(prefix));
}

/** The environment of a Python child: the allowed part of `from` (the server's), and `set` on top. */
export function childEnvironment(set: Record<string, string>, from: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(from)) if (value !== undefined && passedToChild(name)) env[name] = value;
  return { ...env, ...set };
}
