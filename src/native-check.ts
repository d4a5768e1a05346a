// The uWebSockets.js package we depend on silently falls back to a pure-JS implementation when
// its native binary does not load (wrong Node ABI, glibc too old, UWS_USE_FALLBACK set).
// That fallback is many times slower and behaves differently, so ugate refuses to run on it
// unless the operator asks for it explicitly.

export interface UwsStatus {
  readonly native: boolean;
  /** Why the binary did not load, when it did not. */
  readonly reason: string | null;
}

export function checkUwsNative(): UwsStatus {
  const binary = `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`;
  if (/^(true|1)$/i.test(process.env.UWS_USE_FALLBACK ?? '')) {
    return { native: false, reason: 'UWS_USE_FALLBACK is set in the environment' };
  }
  const warn = console.warn;
  let warning = '';
  // The package prints its own warning and carries on; capture it to report the cause.
  console.warn = (...args: unknown[]) => {
    warning += args.join(' ') + '\n';
  };
  try {
    require('uWebSockets.js');
  } finally {
    console.warn = warn;
  }
  const loaded = Object.keys(require.cache).some((k) => k.endsWith(binary));
  if (loaded) return { native: true, reason: null };
  const cause = warning.split('\n').find((l) => /Error|error/.test(l)) ?? `no ${binary} was loaded`;
  return { native: false, reason: `the native binary ${binary} did not load (${cause.trim()})` };
}
