import {setFlagsFromString} from 'node:v8'

// Every V8 setting regops changes at run time, in one place. They are process-wide and apply from the
// moment they are set (worker threads started later take them too); none changes what a job computes.

/**
 * A long job's live set is bounded (a prefix's rows, a read-ahead, a directory), but what it allocates per
 * object is promoted and dies in the old generation, which V8 lets grow to about four times the live set
 * between full collections: peak RSS then grows with the registry though the live heap does not (audit at
 * 100k blobs: 226-246 MiB against 117-121 at 10k; live heap 27 MiB). Growing by half instead: audit 150
 * MiB at 100k, filesystem sweep 129 instead of 145, for a few percent more CPU.
 */
export function boundOldGenerationGrowth(): void {
  setFlagsFromString('--heap-growing-percent=50')
}

/** set by keepYoungGenerationSmall, for restoreFlagsAfterWorkerStart */
let youngGenerationKeptSmall = false

/**
 * A load test allocates a few objects per request at hundreds of requests a second; V8 answers the
 * allocation rate by doubling the young generation up to 32 MiB, at whatever moment of the run it
 * decides to: RSS steps from 99 to 110 MiB 10-30 s in, which reads as growth on a memory graph. Kept at
 * its initial size, a 60 s run at 600 pulls/s stayed at 98-99 MiB throughout, for the same CPU (7.95 s
 * against 8.05). The sweep takes it too, from its first line (below). In the audit bench (one run each way)
 * it lowered peaks by 9-23 MiB but the 10k checksum audit took 11.6 s against 9.1 s: not a clear gain, so
 * the audit and the import do without.
 */
export function keepYoungGenerationSmall(): void {
  youngGenerationKeptSmall = true
  setFlagsFromString('--semi-space-growth-factor=1')
}

/**
 * Starting a worker thread puts --semi-space-growth-factor back to its default for the whole process
 * (measured, not traced to its line in V8: the new isolate's heap set-up is the likely place): a test
 * script's young generation stayed at 2 MiB without a worker and grew to 32 MiB after an empty one had run.
 * The sweep's main thread did the same once its listing worker was up. So whoever starts a worker calls
 * this once the worker is running.
 */
export function restoreFlagsAfterWorkerStart(): void {
  if (youngGenerationKeptSmall) setFlagsFromString('--semi-space-growth-factor=1')
}

/** The command topics whose young generation stays at its initial size from the process's first line. */
const SMALL_YOUNG_GENERATION_FROM_START = new Set(['sweep'])

/**
 * V8 already doubles the young generation while oclif loads, in the first 200 ms, and never shrinks it, so
 * bin/run.js calls this before anything loads. The filesystem sweep at 100k blobs, three runs each:
 * default 125-131 MiB peak RSS; kept small from the job runner (and after the worker starts) 102-112; from
 * the first line 99-102 (10k: 96-98 -> 86-87), the same time and CPU. On radosgw at 10k blobs: storage
 * strategy 118-120 -> 108-110 MiB, 1.70-1.79 s -> 1.77-2.03 s; metadata strategy 117-120 -> 95-97 MiB, the
 * same time. Not the import: what it allocates per manifest then outlives the small young generation and
 * is promoted, and 30k manifests took 14.2-15.3 s against 12.5-13.3 (a CPU second more).
 */
export function applyStartupFlags(argv: readonly string[]): void {
  const topic = argv.find((arg) => !arg.startsWith('-'))?.split(':')[0]
  if (topic !== undefined && SMALL_YOUNG_GENERATION_FROM_START.has(topic)) keepYoungGenerationSmall()
}

/**
 * undici parses HTTP with llhttp compiled to WebAssembly, on the first connection. V8 compiles it at once
 * with its baseline compiler, then again with its optimizing one once it runs hot: that second compile of
 * llhttp's one giant state-machine function took 35 MiB of compiler memory at its peak (V8's
 * peak_malloced_memory, 6 MiB -> 41 MiB during the first listing), a fifth of a size audit's peak RSS at
 * 10k blobs (137 -> 121 MiB with this flag), and a core for a moment. Baseline code parses a response's
 * headers in a few microseconds either way: a 60 s load test at 600 pulls/s used 8.43 s of CPU with it and
 * 8.75 s without, and its peak RSS went from 116 to 96 MiB. It is the process's only WebAssembly besides
 * Node's own module lexer. Set before the first connection: V8 decides the tier when it compiles.
 */
export function compileWasmBaselineOnly(): void {
  setFlagsFromString('--liftoff-only')
}
