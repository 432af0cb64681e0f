// The playground's two AudioWorklet processors (loaded with audioWorklet.addModule):
//
//   pcm16-capture  microphone → 16-bit PCM at 24 kHz, resampled from the device rate (a 4th-order Butterworth
//                  low-pass below the new Nyquist, then linear interpolation), posted in chunks of `chunkMs`
//                  as {type: "chunk", pcm: ArrayBuffer, rms}.
//   pcm16-player   plays queued 24 kHz float chunks ({type: "chunk", samples, item}) back to back in a 24 kHz
//                  AudioContext; {type: "flush"} drops what is queued (barge-in, cancel). It reports
//                  {type: "state", state: "playing"|"idle"}, {type: "played", item, samples} per chunk played to
//                  its end, and {type: "flushed", item, played, dropped} (samples of the cut item played so far).

const TARGET_RATE = 24000;

// One RBJ-cookbook low-pass biquad section (transposed direct form II).
class Biquad {
  constructor(rate, cutoff, q) {
    const w = (2 * Math.PI * cutoff) / rate;
    const alpha = Math.sin(w) / (2 * q);
    const cos = Math.cos(w);
    const a0 = 1 + alpha;
    this.b0 = (1 - cos) / 2 / a0;
    this.b1 = (1 - cos) / a0;
    this.b2 = this.b0;
    this.a1 = (-2 * cos) / a0;
    this.a2 = (1 - alpha) / a0;
    this.z1 = 0;
    this.z2 = 0;
  }

  run(x) {
    const y = this.b0 * x + this.z1;
    this.z1 = this.b1 * x - this.a1 * y + this.z2;
    this.z2 = this.b2 * x - this.a2 * y;
    return y;
  }
}

class Capture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.target = opts.targetRate || TARGET_RATE;
    this.step = sampleRate / this.target; // input samples per output sample
    this.size = Math.round((this.target * (opts.chunkMs || 50)) / 1000);
    this.out = new Int16Array(this.size);
    this.filled = 0;
    this.sumSquares = 0;
    this.t = 0; // position of the next output sample, in input samples from the start of the current block
    this.prev = 0; // the last (filtered) input sample of the previous block
    this.buf = new Float32Array(128);
    // Butterworth 4th order as two biquads (Q 0.541, 1.307), cut at 45 % of the target rate.
    this.filters = this.step > 1
      ? [new Biquad(sampleRate, 0.45 * this.target, 0.5412), new Biquad(sampleRate, 0.45 * this.target, 1.3066)]
      : [];
    this.stopped = false;
    this.port.onmessage = (event) => {
      if (event.data && event.data.type === "stop") this.stopped = true;
    };
  }

  process(inputs) {
    if (this.stopped) return false;
    const input = inputs[0];
    if (!input || input.length === 0 || !input[0]) return true;
    const n = input[0].length;
    if (this.buf.length !== n) this.buf = new Float32Array(n);
    const x = this.buf;
    for (let i = 0; i < n; i++) {
      let v = 0;
      for (let c = 0; c < input.length; c++) v += input[c][i];
      v /= input.length;
      for (const f of this.filters) v = f.run(v);
      x[i] = v;
    }
    // Linear interpolation between sample floor(t) (-1 = the previous block's last) and the next one.
    while (this.t < n - 1) {
      const i = Math.floor(this.t);
      const frac = this.t - i;
      const a = i < 0 ? this.prev : x[i];
      const v = a + (x[i + 1] - a) * frac;
      this.push(v);
      this.t += this.step;
    }
    this.t -= n;
    this.prev = x[n - 1];
    return true;
  }

  push(v) {
    const s = Math.max(-1, Math.min(1, v));
    this.out[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
    this.sumSquares += s * s;
    if (this.filled === this.size) {
      const pcm = this.out.buffer;
      this.port.postMessage({ type: "chunk", pcm, rms: Math.sqrt(this.sumSquares / this.size) }, [pcm]);
      this.out = new Int16Array(this.size);
      this.filled = 0;
      this.sumSquares = 0;
    }
  }
}

class Player extends AudioWorkletProcessor {
  constructor() {
    super();
    this.queue = [];
    this.current = null;
    this.offset = 0;
    this.playing = false;
    this.port.onmessage = (event) => {
      const msg = event.data;
      if (msg.type === "chunk") {
        this.queue.push({ samples: msg.samples, item: msg.item });
      } else if (msg.type === "flush") {
        let dropped = this.queue.reduce((sum, chunk) => sum + chunk.samples.length, 0);
        const item = this.current ? this.current.item : null;
        const played = this.current ? this.offset : 0;
        if (this.current) dropped += this.current.samples.length - this.offset;
        this.queue = [];
        this.current = null;
        this.offset = 0;
        this.port.postMessage({ type: "flushed", item, played, dropped, truncate: Boolean(msg.truncate) });
        this.setPlaying(false);
      }
    };
  }

  setPlaying(playing) {
    if (playing !== this.playing) {
      this.playing = playing;
      this.port.postMessage({ type: "state", state: playing ? "playing" : "idle" });
    }
  }

  process(inputs, outputs) {
    const channels = outputs[0];
    const out = channels[0];
    let i = 0;
    while (i < out.length) {
      if (!this.current) {
        this.current = this.queue.shift() || null;
        this.offset = 0;
        if (!this.current) break;
      }
      const samples = this.current.samples;
      const n = Math.min(out.length - i, samples.length - this.offset);
      out.set(samples.subarray(this.offset, this.offset + n), i);
      i += n;
      this.offset += n;
      if (this.offset >= samples.length) {
        this.port.postMessage({ type: "played", item: this.current.item, samples: samples.length });
        this.current = null;
      }
    }
    for (let c = 1; c < channels.length; c++) channels[c].set(out);
    this.setPlaying(i > 0 || this.current !== null || this.queue.length > 0);
    return true;
  }
}

registerProcessor("pcm16-capture", Capture);
registerProcessor("pcm16-player", Player);
