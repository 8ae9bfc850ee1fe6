/**
 * A command-line flag's value as a positive safe integer, or an error naming the flag.
 *
 * @example
 * positiveInteger('agents', '50') // 50
 */
export function positiveInteger(flag: string, value: string): number {
  if (!/^[1-9]\d*$/.test(value) || !Number.isSafeInteger(Number(value)))
    throw new Error(`--${flag} must be a positive integer (got ${JSON.stringify(value)})`)
  return Number(value)
}
