/**
 * Newline-delimited framing for the lab's control channels: feed it chunks, get whole lines.
 * A line longer than `maxLineBytes` is hostile or broken: `onOverflow` is called and the buffer dropped.
 */
export function lineSplitter(
  onLine: (line: string) => void,
  onOverflow: () => void,
  maxLineBytes = 1 << 20,
): (chunk: string | Uint8Array) => void {
  let buffered = '';
  const decoder = new TextDecoder();
  return (chunk) => {
    buffered += typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true });
    for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      onLine(line);
    }
    if (buffered.length > maxLineBytes) {
      buffered = '';
      onOverflow();
    }
  };
}
