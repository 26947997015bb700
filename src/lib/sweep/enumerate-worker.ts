import {parentPort, workerData} from 'node:worker_threads'
import type {RegionConfig} from '../config/config.js'
import {openDriver} from '../storage/index.js'
import {enumerateBlobs} from './enumerate.js'
import {ShardLines} from './spill.js'

const {region, shards, dir, suffix, concurrency, memoryLines} = workerData as {
  region: RegionConfig
  shards: string[]
  dir: string
  suffix: string
  concurrency: number
  memoryLines: number
}
const driver = await openDriver(region)
try {
  const lines = new ShardLines(dir, new Set(shards), suffix, memoryLines)
  const done = await enumerateBlobs(driver, shards, lines, {
    concurrency,
    onProblem: (problem) => parentPort!.postMessage({problem}),
    onListed: (listed) => parentPort!.postMessage({listed}),
  })
  parentPort!.postMessage({done, held: lines.takeHeld()})
} catch (error) {
  parentPort!.postMessage({error: (error as Error).message})
} finally {
  await driver.close()
}
