// Drains an SDK stream: how many tokens it delivered and the value it returned (its done frame).

/** Reads `stream` to its end; resolves with the tokens its chunks counted and what it returned. */
export async function collect<D>(stream: AsyncGenerator<{ count: number }, D>): Promise<{ tokens: number; done: D }> {
  let tokens = 0
  let result = await stream.next()
  while (!result.done) {
    tokens += result.value.count
    result = await stream.next()
  }
  return { tokens, done: result.value }
}
