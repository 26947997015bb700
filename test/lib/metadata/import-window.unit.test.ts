import {test} from 'node:test'
import assert from 'node:assert/strict'
import {CheckpointWindow} from '../../../src/lib/metadata/import-window.js'

test('the checkpoint passes items only in listing order, each once', () => {
  const window = new CheckpointWindow<number>()
  const a = window.start('a')
  const b = window.start('b')
  const c = window.start('c')
  b.done(2)
  assert.deepEqual(window.advance(), [], 'b finished first, but a is still running')
  a.done(1)
  assert.deepEqual(window.advance(), [
    {name: 'a', outcome: 1},
    {name: 'b', outcome: 2},
  ])
  assert.deepEqual(window.advance(), [], 'nothing twice')
  c.done(3)
  assert.deepEqual(window.advance(), [{name: 'c', outcome: 3}])
})

test('after a failure the checkpoint never passes it, even when later items finish', () => {
  const window = new CheckpointWindow<string>()
  const a = window.start('a')
  const b = window.start('b')
  a.done('ok')
  b.failed()
  const c = window.start('c')
  c.done('ok')
  assert.deepEqual(window.advance(), [{name: 'a', outcome: 'ok'}])
  assert.equal(window.blocked, true)
  const d = window.start('d')
  d.done('ok')
  assert.deepEqual(window.advance(), [])
})
