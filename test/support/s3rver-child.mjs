// Runs s3rver in its own process (its CPU and event loop stay out of the tests' timings), on the
// port given as argv[2] (0 = any), storing into argv[3]; prints {"port":N} once listening.
import S3rver from 's3rver';

const [, , port = '0', directory] = process.argv;
const server = new S3rver({ port: Number(port), address: '127.0.0.1', directory, silent: true, allowMismatchedSignatures: false });
const { port: bound } = await server.run();
process.stdout.write(`${JSON.stringify({ port: bound })}\n`);
process.on('SIGTERM', () => server.close().then(() => process.exit(0)));
