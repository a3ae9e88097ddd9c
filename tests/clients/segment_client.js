// Send identify, page and track calls with Segment's official Node library
// (npm @segment/analytics-node) to the host and write key given as arguments.
// Exits non-zero if the library reports any error.
const { Analytics } = require('@segment/analytics-node')

const [host, writeKey, anon] = process.argv.slice(2)
const analytics = new Analytics({ writeKey, host, maxEventsInBatch: 3, flushInterval: 200 })
let failed = false
analytics.on('error', (e) => { console.error(e); failed = true })

analytics.identify({ userId: 'node-user', anonymousId: anon, traits: { plan: 'basic' } })
analytics.page({
  userId: 'node-user', anonymousId: anon, name: 'Home',
  properties: { url: 'https://shop.example/?utm_source=newsletter&utm_medium=email' },
  timestamp: new Date('2026-11-21T09:00:00Z'),
})
analytics.track({
  userId: 'node-user', anonymousId: anon, event: 'Order Completed',
  properties: { revenue: 349, currency: 'EUR' },
  timestamp: new Date('2026-11-21T10:00:00Z'),
})
analytics.closeAndFlush({ timeout: 10000 }).then(() => process.exit(failed ? 1 : 0))
