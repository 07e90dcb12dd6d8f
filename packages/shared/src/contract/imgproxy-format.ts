// Which output format an imgproxy URL asks for, parsed the way imgproxy parses it
// (options/url.go and parseURLOptions in imgproxy v3):
//
//   /<signature>/<option>/<option>/plain/<source url>@<ext>
//   /<signature>/<option>/<option>/<base64 source, may be split by "/">.<ext>
//
// Options are `name:arg:arg` segments; the first segment without ":" starts the source. The
// extension wins over a `format`/`f`/`ext` option. A `preset` may also set a format, but we
// cannot see inside presets, so such a URL counts as naming no format.

const FORMAT_OPTIONS = new Set(['format', 'f', 'ext']);

/** Content types imgproxy sends for each format name it accepts. */
const FORMAT_CONTENT_TYPES: Readonly<Record<string, string>> = {
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  png: 'image/png',
  webp: 'image/webp',
  avif: 'image/avif',
  gif: 'image/gif',
  ico: 'image/x-icon',
  svg: 'image/svg+xml',
  heic: 'image/heif',
  bmp: 'image/bmp',
  tiff: 'image/tiff',
  jxl: 'image/jxl',
  pdf: 'application/pdf',
  mp4: 'video/mp4',
};

/** The format named by the URL (lowercase), or undefined when the URL leaves it to imgproxy. */
export function requestedFormat(rawPath: string): string | undefined {
  // Drop the signature segment (or "insecure"/"unsafe"): it is never an option.
  const segments = rawPath.split('/').slice(2);
  let optionFormat: string | undefined;
  let sourceStart = segments.length;
  for (const [i, segment] of segments.entries()) {
    const args = segment.split(':');
    if (args.length === 1) {
      sourceStart = i;
      break;
    }
    if (FORMAT_OPTIONS.has(args[0]!)) optionFormat = args[1];
  }
  const source = segments.slice(sourceStart);
  const extension = source[0] === 'plain' && source.length > 1 ? plainExtension(source.slice(1)) : base64Extension(source);
  const format = extension || optionFormat;
  return format ? format.toLowerCase() : undefined;
}

function plainExtension(parts: string[]): string | undefined {
  const pieces = parts.join('/').split('@');
  return pieces.length === 2 ? pieces[1] : undefined;
}

function base64Extension(parts: string[]): string | undefined {
  const pieces = parts.join('').split('.');
  return pieces.length === 2 ? pieces[1] : undefined;
}

/** The Content-Type imgproxy answers with for a format name, if we know the format. */
export function contentTypeOfFormat(format: string): string | undefined {
  return FORMAT_CONTENT_TYPES[format];
}
