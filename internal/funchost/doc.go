// Package funchost speaks the Azure Functions custom-handler wire protocol:
// it reads the host's invocation requests as a stream and writes its
// replies. It knows nothing of blobs' contents, parsing or storage.
//
// # Invocations
//
// For a non-HTTP trigger the host sends POST /<FunctionName> with a JSON
// body
//
//	{"Data": {"<binding>": <content>}, "Metadata": {"name": …, "Uri": …, "Properties": {…}, "sys": {…}}}
//
// and the headers X-Azure-Functions-InvocationId and
// X-Azure-Functions-HostVersion. Three quirks shape this package:
//
//   - A blob trigger's Data value is the whole blob — base64 with
//     "dataType": "binary", otherwise a string encoded twice — and can be
//     hundreds of MiB. [ReadInvocation] validates and skips it in constant
//     memory, keeping only its size; the handler reads the blob itself from
//     storage, from its own checkpoint.
//   - The host JSON-encodes string values in Metadata twice: "name" arrives
//     as "\"resourceId=…\"". [Invocation.String] accepts one or two levels.
//   - Objects such as Properties may arrive as objects or as strings holding
//     one. [Invocation.Blob] accepts both.
//
// # Replies
//
// [WriteResponse] sends {"Outputs":{},"Logs":[…],"ReturnValue":null}. Any
// non-2xx status makes the host retry the invocation five times and then
// move a blob trigger's blob to webjobs-blobtrigger-poison, so a handler
// should answer 200 for anything a retry cannot cure.
//
// Package hosttest builds the host's requests for tests.
package funchost
