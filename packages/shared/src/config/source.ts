import type { Reader } from './reader.js';
import type { Variable } from './variable.js';

// Where imgproxy finds relative sources: what a path's source is, for purge by source and the tags.

export const SOURCE_VARIABLES = [
  {
    name: 'IMGPROXY_BASE_URL',
    default: '',
    roles: ['proxy', 'uploader', 'purge'],
    description:
      'The same value as imgproxy’s own: the prefix of relative source URLs, so that purge by source (`--source`) and the source tags (`CACHE_TAG_HEADER`) name the image imgproxy read.',
  },
] as const satisfies readonly Variable[];

export function readImgproxyBaseUrl(r: Reader): string {
  const baseUrl = r.raw('IMGPROXY_BASE_URL');
  if (baseUrl !== '' && !/^[a-z][a-z0-9+.-]*:\/\//i.test(baseUrl)) {
    r.problem(`IMGPROXY_BASE_URL must be a URL (http://..., s3://..., local:///...), got "${baseUrl}"`);
  }
  return baseUrl;
}
