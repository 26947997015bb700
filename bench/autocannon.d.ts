// autocannon ships no types; the bench uses only its promise form and the average request rate.
declare module 'autocannon' {
  export default function autocannon(opts: {
    url: string
    connections: number
    duration: number
    headers?: Record<string, string>
  }): Promise<{requests: {average: number}}>
}
