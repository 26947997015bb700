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

/**
 * A load test allocates a few objects per request at hundreds of requests a second; V8 answers the
 * allocation rate by doubling the young generation up to 32 MiB, at whatever moment of the run it
 * decides to: RSS steps from 99 to 110 MiB 10-30 s in, which reads as growth on a memory graph. Kept at
 * its initial size, a 60 s run at 600 pulls/s stayed at 98-99 MiB throughout, for the same CPU (7.95 s
 * against 8.05). Only a load test takes this: the filesystem sweep's young generation grew to 32 MiB with it
 * anyway, and in the audit bench (one run each way) it lowered peaks by 9-23 MiB but the 10k checksum
 * audit took 11.6 s against 9.1 s: not a clear gain for the jobs, so they do without.
 */
export function keepYoungGenerationSmall(): void {
  setFlagsFromString('--semi-space-growth-factor=1')
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
