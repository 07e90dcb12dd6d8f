// Every S3 failure as one error with a one-line reason an operator can act on
// ("PutObject 403 AccessDenied: Access Denied"): BullMQ keeps it as a failed job's reason, the
// dashboard shows it, /readyz carries it. The SDK's own errors differ by protocol and by whether
// S3 sent a body; this is the one place that reads them.

export class S3OperationError extends Error {
  constructor(
    message: string,
    /** the HTTP status S3 answered with; undefined when it never answered */
    readonly status: number | undefined,
    /** S3's error code (NoSuchBucket, SlowDown, PermanentRedirect...), or the network error's */
    readonly code: string,
  ) {
    super(message);
    this.name = 'S3OperationError';
    // BullMQ keeps the stack as the failed job's trace: the reason alone is what an operator needs.
    this.stack = `${this.name}: ${message}`;
  }

  /** 503 SlowDown and friends: the provider asks us to slow down, not to give up. */
  get throttled(): boolean {
    return this.status === 429 || this.code === 'SlowDown' || this.code === 'Throttling' || this.code === 'TooManyRequests';
  }

  /** S3 answered 3xx: the bucket lives behind another endpoint or region. */
  get redirect(): boolean {
    return this.status !== undefined && this.status >= 300 && this.status < 400;
  }
}

/** What a client needs to say where the bucket is, for a redirect's reason. */
export interface Whereabouts {
  endpoint: string;
  region: string;
}

/** What the SDK names a status S3 sent no error body for (a HEAD's). */
const STATUS_CODES: Record<number, string> = {
  301: 'PermanentRedirect',
  302: 'Found',
  307: 'TemporaryRedirect',
  400: 'BadRequest',
  403: 'Forbidden',
  404: 'NotFound',
  409: 'Conflict',
  412: 'PreconditionFailed',
  503: 'ServiceUnavailable',
};

/** The fields of the SDK's errors that are read here (ServiceException, TimeoutError, AbortError). */
interface SdkError {
  name?: string;
  message?: string;
  code?: string;
  Code?: string;
  /** in PermanentRedirect's body: the endpoint the bucket answers at */
  Endpoint?: string;
  $metadata?: { httpStatusCode?: number };
  $response?: { statusCode?: number; headers?: Record<string, string | undefined> };
}

/** The SDK's error for `operation` as an S3OperationError; `where` names the settings in a redirect's reason. */
export function operationError(operation: string, error: unknown, where: Whereabouts, deadline = 'S3_REQUEST_TIMEOUT_MS'): S3OperationError {
  if (error instanceof S3OperationError) return error;
  const e = (error ?? {}) as SdkError;
  const status = e.$response?.statusCode ?? e.$metadata?.httpStatusCode;
  if (status !== undefined && e.$response !== undefined) {
    const named = e.Code ?? (e.name && e.name !== 'Unknown' && e.name !== 'Error' ? e.name : undefined);
    const code = named ?? STATUS_CODES[status] ?? `Http${status}`;
    if (status >= 300 && status < 400) return redirectError(operation, status, code, e, where);
    const message = e.message && e.message !== 'UnknownError' ? e.message : 'no message';
    return new S3OperationError(`${operation} ${status} ${code}: ${message}`, status, code);
  }
  if (e.name === 'TimeoutError' || e.name === 'AbortError' || e.code === 'ETIMEDOUT') {
    return new S3OperationError(`${operation} timed out (${deadline})`, undefined, 'Timeout');
  }
  if (e.name === 'CredentialsProviderError' || e.name === 'ProviderError') {
    return new S3OperationError(`${operation} could not be signed: ${e.message ?? 'no credentials'} (AWS credentials)`, undefined, 'CredentialsError');
  }
  const code = e.code ?? e.name ?? 'Error';
  return new S3OperationError(`${operation} network error ${code}: ${e.message ?? String(error)}`, undefined, code);
}

/**
 * A 3xx is never a success: S3 answers 301 when a bucket is addressed at another region's endpoint,
 * gateways 307. The reason says where the bucket is, when S3 said so, and what to set.
 */
function redirectError(operation: string, status: number, code: string, e: SdkError, where: Whereabouts): S3OperationError {
  const headers = e.$response?.headers ?? {};
  const region = headers['x-amz-bucket-region'];
  const location = e.Endpoint ?? headers.location;
  const at = [location && `at ${location}`, region && `in region ${region}`].filter(Boolean).join(', ');
  const lost = operation === 'PutObject' ? ': the image was not stored' : '';
  return new S3OperationError(
    `${operation} ${status} ${code}: S3 redirects this bucket${at ? ` (${at})` : ''}${lost}; ` +
      `set S3_ENDPOINT (now ${where.endpoint}) and S3_REGION (now ${where.region}) to the bucket's own`,
    status,
    code,
  );
}
