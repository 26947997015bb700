// A loopback TLS front for the tests: a CA and a leaf certificate for 127.0.0.1 made with openssl, and a
// TLS server that passes each connection through, byte for byte, to a plain-TCP backend (radosgw, a registry).
import {execFileSync} from 'node:child_process'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {connect, type AddressInfo} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {createServer, type Server} from 'node:tls'

export interface TestPki {
  dir: string
  /** PEM file of the CA that signed the leaf: what a region's caFile names */
  caFile: string
  /** PEM file of another CA, which did not sign it */
  otherCaFile: string
  key: string
  cert: string
  remove(): void
}

export function makeTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'regops-pki-'))
  const ssl = (args: string[]) => execFileSync('openssl', args, {cwd: dir, stdio: 'pipe'})
  const ca = (name: string) =>
    ssl([
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '2',
      '-subj',
      `/CN=${name}`,
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.pem`,
    ])
  ca('regops-test-ca')
  ca('regops-other-ca')
  ssl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', 'leaf.key', '-out', 'leaf.csr'])
  writeFileSync(join(dir, 'leaf.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n')
  ssl([
    'x509',
    '-req',
    '-in',
    'leaf.csr',
    '-CA',
    'regops-test-ca.pem',
    '-CAkey',
    'regops-test-ca.key',
    '-CAcreateserial',
    '-days',
    '2',
    '-extfile',
    'leaf.ext',
    '-out',
    'leaf.pem',
  ])
  return {
    dir,
    caFile: join(dir, 'regops-test-ca.pem'),
    otherCaFile: join(dir, 'regops-other-ca.pem'),
    key: readFileSync(join(dir, 'leaf.key'), 'utf8'),
    cert: readFileSync(join(dir, 'leaf.pem'), 'utf8'),
    remove: () => rmSync(dir, {recursive: true, force: true}),
  }
}

export interface TlsFront {
  /** https://127.0.0.1:PORT */
  url: string
  /** connections whose handshake completed */
  handshakes: number
  close(): Promise<void>
}

/** A TLS server on 127.0.0.1 that forwards every connection to the plain backend at `backend` (http://host:port). */
export async function startTlsFront(pki: TestPki, backend: string): Promise<TlsFront> {
  const target = new URL(backend)
  const front: TlsFront = {url: '', handshakes: 0, close: async () => {}}
  const server: Server = createServer({key: pki.key, cert: pki.cert}, (socket) => {
    front.handshakes++
    const upstream = connect(Number(target.port), target.hostname)
    socket.pipe(upstream).pipe(socket)
    const end = () => {
      socket.destroy()
      upstream.destroy()
    }
    socket.on('error', end)
    upstream.on('error', end)
    socket.on('close', end)
    upstream.on('close', end)
  })
  // A client that refuses the certificate resets the handshake: not an error of the front.
  server.on('tlsClientError', () => {})
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  front.url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`
  front.close = () => new Promise<void>((resolve) => server.close(() => resolve()))
  return front
}
