// The client's request body as a Readable that undici pulls from. Backpressure both ways:
// when undici stops reading (slow backend) the buffer fills and the client's socket is paused;
// when undici reads again the socket is resumed.
import { Readable } from 'node:stream';
import { Phase, type Exchange } from './exchange';

const HIGH_WATER_MARK = 64 * 1024;

export class RequestBody extends Readable {
  private readonly x: Exchange;
  private paused = false;

  constructor(x: Exchange) {
    super({ highWaterMark: HIGH_WATER_MARK });
    this.x = x;
  }

  /** Called from uWS onData: the chunk's memory is only valid during the call, so copy it. */
  pushChunk(chunk: ArrayBuffer, isLast: boolean): void {
    if (chunk.byteLength > 0 && !this.push(Buffer.from(new Uint8Array(chunk))) && !isLast && !this.paused) {
      this.paused = true;
      this.x.res.pause();
    }
    if (isLast) this.push(null);
  }

  override _read(): void {
    if (this.paused) {
      this.paused = false;
      // uWS throws on any use of a response that has ended (an early answer, a 413) or whose
      // client left; the upload then stays paused until uWS closes the connection.
      if (!this.x.clientGone && this.x.phase !== Phase.Done) this.x.res.resume();
    }
  }
}
