import { createRequire } from 'node:module'
import { defineConfig } from 'hardhat/config'

const require = createRequire(import.meta.url)
// Offline compile: the native solc download is unreachable here, so Hardhat runs
// solc-js (WebAssembly) from the pinned `solc` npm package instead.
const solcPackage = require('solc/package.json') as { version: string }

export default defineConfig({
  solidity: {
    version: solcPackage.version,
    path: require.resolve('solc/soljson.js'),
    settings: {
      // OpenZeppelin 5 uses `mcopy`.
      evmVersion: 'cancun',
      optimizer: { enabled: true, runs: 10_000 },
    },
  },
  networks: {
    // Estimate gas as a real node does (the top-level call succeeds). EDR's default also refuses any
    // transaction in which an inner call runs out of its own gas budget — which the escrow's capped payout
    // pushes do by design when a recipient is hostile.
    default: { type: 'edr-simulated', chainType: 'l1', gasEstimationMode: 'topLevelSuccess' },
    // A second in-process chain with another chain id, for cross-chain replay tests.
    otherChain: { type: 'edr-simulated', chainType: 'l1', chainId: 31338, gasEstimationMode: 'topLevelSuccess' },
  },
})
