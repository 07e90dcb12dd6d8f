import { ListObjectsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { BucketClient } from './bucket.js';

// Listing the keys under a prefix, 1000 a request. ListObjectsV2 first: AWS's current API, and the
// only one some providers document (Backblaze B2). Where a provider refuses it (a gateway without
// it answers 400 or 501), ListObjects v1 with markers, which every S3 server has had since the
// start: that client lists with v1 from then on.

/** Providers' answers to a listing API they do not have. */
const NO_V2 = new Set(['NotImplemented', 'InvalidArgument', 'InvalidRequest', 'UnsupportedOperation']);

const listsWithV1 = new WeakSet<BucketClient>();

export interface ListedPage {
  keys: string[];
  /** where the next page starts; undefined after the last */
  next: string | undefined;
}

/** One page of keys under `prefix`, after `from` (a page's `next`). */
export async function listPage(client: BucketClient, prefix: string, from?: string): Promise<ListedPage> {
  if (!listsWithV1.has(client)) {
    try {
      const out = await client.s3.send(
        new ListObjectsV2Command({ Bucket: client.bucket, Prefix: prefix || undefined, MaxKeys: 1000, ContinuationToken: from }),
      );
      const keys = (out.Contents ?? []).map((o) => o.Key!);
      return { keys, next: out.IsTruncated && out.NextContinuationToken ? out.NextContinuationToken : undefined };
    } catch (error) {
      const e = client.error('ListObjectsV2', error);
      if (from !== undefined || !(e.status === 501 || (e.status === 400 && NO_V2.has(e.code)))) throw e;
      listsWithV1.add(client);
    }
  }
  try {
    const out = await client.s3.send(new ListObjectsCommand({ Bucket: client.bucket, Prefix: prefix || undefined, MaxKeys: 1000, Marker: from }));
    const keys = (out.Contents ?? []).map((o) => o.Key!);
    // NextMarker comes only with a delimiter: the last key is where the next page starts
    return { keys, next: out.IsTruncated && keys.length > 0 ? keys.at(-1) : undefined };
  } catch (error) {
    throw client.error('ListObjects', error);
  }
}

/** Every key under `prefix`, page by page; stops (undefined) past `maxPages` requests. */
export async function listKeys(
  client: BucketClient,
  prefix: string,
  maxPages = Number.POSITIVE_INFINITY,
  onPage?: (keys: string[]) => void,
): Promise<string[] | undefined> {
  const keys: string[] = [];
  let from: string | undefined;
  for (let pages = 0; ; pages++) {
    if (pages >= maxPages) return undefined;
    const page = await listPage(client, prefix, from);
    keys.push(...page.keys);
    onPage?.(page.keys);
    if (page.next === undefined) return keys;
    from = page.next;
  }
}
