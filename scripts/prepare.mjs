// `npm ci` runs this. On a clone (dev dependencies installed) it builds, so `npm ci && npx regops quickstart`
// works; with `npm ci --omit=dev` on a built checkout there is no TypeScript to build with, and dist/ is
// already there, so it does nothing instead of failing the install.
import {execFileSync} from 'node:child_process'
import {createRequire} from 'node:module'

const require = createRequire(import.meta.url)
let typescript
try {
  typescript = require.resolve('typescript/package.json')
} catch {
  console.error('regops: typescript is not installed (production install): using the dist/ that is already built')
  process.exit(0)
}
if (typescript) execFileSync('npm', ['run', 'build', '--silent'], {stdio: 'inherit'})
