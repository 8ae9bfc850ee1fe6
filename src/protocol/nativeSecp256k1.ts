import { createRequire } from 'node:module'

/*
 * Native libsecp256k1 (npm `secp256k1`, which ships prebuilt N-API binaries): ~56 µs to recover and ~40 µs
 * to sign, against ~1.3 ms for @noble/curves. Loaded once; where it cannot load (another platform, a
 * bundler, a sandbox) callers fall back to noble, and one warning says so.
 */

/** The subset of the `secp256k1` package we call (it ships no types). */
export type NativeSecp256k1 = {
  ecdsaRecover(sig: Uint8Array, recid: number, msg32: Uint8Array, compressed: boolean, output?: Uint8Array): Uint8Array
  ecdsaSign(msg32: Uint8Array, privateKey: Uint8Array): { signature: Uint8Array; recid: number }
}

function loadNative(): NativeSecp256k1 | undefined {
  try {
    // `secp256k1/bindings.js`, not the package root: the root silently falls back to the
    // pure-JS `elliptic` build, which is slower than noble and would hide the failure.
    return createRequire(import.meta.url)('secp256k1/bindings.js') as NativeSecp256k1
  } catch (error) {
    console.warn(
      `[sluice] native libsecp256k1 failed to load; signatures fall back to @noble/curves (~20x slower). ${
        error instanceof Error ? error.message : String(error)
      }`,
    )
    return undefined
  }
}

/** The native module, or undefined where it could not load. */
export const native: NativeSecp256k1 | undefined = loadNative()
