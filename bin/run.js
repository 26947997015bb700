#!/usr/bin/env node
import {applyStartupFlags} from '../dist/lib/v8-flags.js'

// Before oclif loads (so imported dynamically): V8 sizes the young generation in the first scavenges.
applyStartupFlags(process.argv.slice(2))
const {execute} = await import('@oclif/core')
await execute({dir: import.meta.url})
