#!/usr/bin/env node
// The `sluice` command line: demo, serve, deploy. Run from the repository with `npm run sluice -- <command>`.
import { parseArgs } from 'node:util'
import { runDemo } from './demo.js'
import { positiveInteger } from './positiveInteger.js'

const usage = `usage: sluice <command> [options]

commands:
  demo     everything in one process on an in-process Hardhat chain
           --agents N (50)  --tokens N (300)  --price USDC-per-output-token (0.00002)
  serve    run a server node against an EVM RPC endpoint (see README)
  deploy   deploy the escrow to an EVM RPC endpoint (see README)
`

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv
  switch (command) {
    case 'demo': {
      const { values } = parseArgs({
        args: rest,
        options: {
          agents: { type: 'string', default: '50' },
          tokens: { type: 'string', default: '300' },
          price: { type: 'string', default: '0.00002' },
        },
      })
      await runDemo({
        agents: positiveInteger('agents', values.agents),
        tokens: positiveInteger('tokens', values.tokens),
        price: values.price,
      })
      return
    }
    case 'serve':
    case 'deploy': {
      const { runServe, runDeploy } = await import('./serve.js')
      await (command === 'serve' ? runServe(rest) : runDeploy(rest))
      return
    }
    default:
      process.stderr.write(usage)
      process.exitCode = command ? 2 : 0
  }
}

main(process.argv.slice(2)).then(
  () => process.exit(process.exitCode ?? 0),
  (error) => {
    process.stderr.write(`sluice: ${error instanceof Error ? error.message : String(error)}\n`)
    process.exit(1)
  },
)
