import pg from 'pg'
const stats = new Map<string, {n: number; ms: number}>()
const orig = pg.Client.prototype.query
;(pg.Client.prototype as any).query = function (text: any, values: any, cb: any) {
  const sql = typeof text === 'string' ? text : text?.text ?? '?'
  const key = sql.replace(/\s+/g, ' ').slice(0, 70)
  const t = performance.now()
  const p = (orig as any).call(this, text, values, cb)
  if (p && typeof p.then === 'function') p.then(() => { const s = stats.get(key) ?? {n: 0, ms: 0}; s.n++; s.ms += performance.now() - t; stats.set(key, s) }, () => {})
  return p
}
process.on('exit', () => { for (const [k, v] of [...stats].sort((a, b) => b[1].ms - a[1].ms).slice(0, 25)) console.log(v.ms.toFixed(0).padStart(7), String(v.n).padStart(6), k) })
