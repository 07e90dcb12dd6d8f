/** An RGB PNG of `width`×`height` whose pixels depend on `seed`. */
export declare function makePng(seed: string, width?: number, height?: number): Buffer;
/** A PNG of about `bytes` bytes. */
export declare function makePngOfSize(seed: string, bytes: number): Buffer;
