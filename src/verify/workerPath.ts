import { createRequire } from 'node:module'
import { fileURLToPath, pathToFileURL } from 'node:url'

/*
 * Where the verification worker lives. `tsc` keeps the tree under dist/ (rootDir is the
 * repository), so this file and the worker keep the same relative position in source and
 * in the build:
 *   source:     src/verify/workerPath.ts       → workers/verifyVouchers.ts  (needs the tsx loader)
 *   production: dist/src/verify/workerPath.js  → dist/workers/verifyVouchers.js (plain Node)
 * Whether this module itself runs as .ts tells which of the two we are.
 */

/**
 * The worker file and the Node options a thread needs to load it.
 *
 * @example
 * const { filename, execArgv } = workerPath()
 * new Piscina({ filename, execArgv })
 */
export type WorkerPath = {
  /** Absolute path of the worker module. */
  filename: string
  /** Extra Node options for worker threads: the tsx loader from source, none from dist/. */
  execArgv: string[]
}

/**
 * Resolves the voucher verification worker for the current build.
 *
 * @example
 * workerPath() // { filename: '/app/dist/workers/verifyVouchers.js', execArgv: [] }
 *
 * @param moduleUrl - The URL to resolve from; defaults to this module (tests pass another).
 */
export function workerPath(moduleUrl: string = import.meta.url): WorkerPath {
  const fromSource = /\.[cm]?ts$/.test(new URL(moduleUrl).pathname)
  const filename = fileURLToPath(new URL(`../../workers/verifyVouchers.${fromSource ? 'ts' : 'js'}`, moduleUrl))
  return { filename, execArgv: fromSource ? ['--import', tsxLoader(moduleUrl)] : [] }
}

// `--import tsx` registers tsx's hooks in the thread before it loads the worker. A bare
// `tsx` would resolve against the working directory, so pass the absolute loader URL.
function tsxLoader(moduleUrl: string): string {
  try {
    return pathToFileURL(createRequire(moduleUrl).resolve('tsx')).href
  } catch {
    return 'tsx'
  }
}
