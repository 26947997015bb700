// Starts the one radosgw cluster a test run shares (scripts/test.sh), writes how to reach it as JSON to
// the file named by the first argument, and stops it on SIGTERM/SIGINT.
import {writeFile} from 'node:fs/promises'
import {startRadosgw} from '../test/helpers/radosgw.js'

const out = process.argv[2]
if (!out) {
  process.stderr.write('usage: node --import tsx scripts/radosgw.ts <file for the JSON>\n')
  process.exit(2)
}
const rgw = await startRadosgw()
await writeFile(
  out,
  JSON.stringify({endpoint: rgw.endpoint, accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey}),
)
process.stderr.write(`radosgw for the test run at ${rgw.endpoint} (ready in ${rgw.startMs} ms)\n`)
const stop = async (): Promise<void> => {
  await rgw.stop()
  process.exit(0)
}
process.once('SIGTERM', () => void stop())
process.once('SIGINT', () => void stop())
setInterval(() => {}, 1 << 30)
