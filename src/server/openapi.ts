/** The API's OpenAPI 3.1 document (served at /api/openapi.json) and the JSON schemas routes validate with. */

const fraction = { type: "number", minimum: 0, maximum: 1 };

/** Body of POST /api/inversions/{id}/edits (fastify validates it; errors name the field). */
export const EDIT_BODY = {
  type: "object",
  additionalProperties: false,
  required: ["prompts"],
  properties: {
    prompts: { type: "array", minItems: 1, maxItems: 4, items: { type: "string", minLength: 1, maxLength: 1000 } },
    mode: { type: "string", enum: ["replace", "refine"] },
    reweight: {
      type: "array",
      maxItems: 32,
      items: {
        type: "object",
        additionalProperties: false,
        required: ["word", "scale"],
        properties: { word: { type: "string", minLength: 1 }, scale: { type: "number", minimum: -10, maximum: 10 } },
      },
    },
    blend: { type: "array", maxItems: 16, items: { type: "string", minLength: 1 } },
    crossSteps: fraction,
    selfSteps: fraction,
    nullSteps: fraction,
  },
} as const;

const error = {
  description: "error",
  content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } },
};
const id = (name: string) => ({
  name,
  in: "path",
  required: true,
  schema: { type: "string", pattern: "^[0-9a-f]{16}$" },
});
const accepted = {
  description: "queued",
  content: {
    "application/json": {
      schema: {
        type: "object",
        properties: { id: { type: "string" }, job: { type: "string" }, position: { type: "integer" } },
      },
    },
  },
};
const json = (description: string) => ({ description, content: { "application/json": {} } });
const png = { description: "PNG image", content: { "image/png": {} } };

export function openApiDocument(): Record<string, unknown> {
  return {
    openapi: "3.1.0",
    info: {
      title: "nulltext",
      version: "0.1.0",
      description:
        "Null-text inversion and Prompt-to-Prompt editing. One heavy job runs at a time; others wait in a queue. Errors are {error} naming the field.",
    },
    components: {
      schemas: {
        Error: { type: "object", required: ["error"], properties: { error: { type: "string" } } },
        Job: {
          type: "object",
          properties: {
            id: { type: "string" },
            kind: { enum: ["invert", "edit", "import"] },
            state: { enum: ["queued", "running", "done", "failed", "cancelled"] },
            position: { type: "integer", description: "1 = next; 0 = running" },
            progress: {
              type: "object",
              properties: {
                phase: { type: "string" },
                step: { type: "integer" },
                total: { type: "integer" },
                loss: { type: "number" },
                elapsed: { type: "number" },
                eta: { type: "number" },
              },
            },
            error: { type: "string" },
            resumable: { type: "boolean" },
            inversion: { type: "string" },
            edit: { type: "string" },
          },
        },
        EditRequest: EDIT_BODY,
      },
      securitySchemes: { bearer: { type: "http", scheme: "bearer" } },
    },
    paths: {
      "/api/health": {
        get: { summary: "model, resolution, methods with time estimates", responses: { 200: json("health") } },
      },
      "/api/inversions": {
        get: { summary: "saved inversions, newest first", responses: { 200: json("list") } },
        post: {
          summary: "invert an image (resubmitting a cancelled inversion resumes it)",
          requestBody: {
            content: {
              "multipart/form-data": {
                schema: {
                  type: "object",
                  required: ["image", "prompt"],
                  properties: {
                    image: { type: "string", format: "binary", description: "PNG, JPEG or WebP" },
                    prompt: { type: "string" },
                    method: { type: "string" },
                    fit: { enum: ["center-crop", "pad", "stretch"] },
                    steps: { type: "number" },
                    guidance: { type: "number" },
                  },
                  additionalProperties: { type: "string", description: "the method's settings (see /api/health)" },
                },
              },
            },
          },
          responses: { 202: accepted, 400: error, 413: error, 415: error },
        },
      },
      "/api/inversions/import": {
        post: {
          summary: "import an .nti file made by the CLI",
          requestBody: {
            content: {
              "multipart/form-data": {
                schema: { type: "object", properties: { file: { type: "string", format: "binary" } } },
              },
            },
          },
          responses: { 202: accepted, 400: error, 409: error, 413: error, 415: error },
        },
      },
      "/api/inversions/{id}": {
        parameters: [id("id")],
        get: { summary: "an inversion", responses: { 200: json("inversion"), 404: error, 409: error } },
        delete: {
          summary: "delete an inversion",
          responses: { 204: { description: "deleted" }, 404: error, 409: error },
        },
      },
      "/api/inversions/{id}/file": {
        parameters: [id("id")],
        get: {
          summary: "the .nti file",
          responses: { 200: { description: "safetensors", content: { "application/octet-stream": {} } }, 404: error },
        },
      },
      "/api/inversions/{id}/input.png": { parameters: [id("id")], get: { responses: { 200: png, 404: error } } },
      "/api/inversions/{id}/reconstruction.png": {
        parameters: [id("id")],
        get: { responses: { 200: png, 404: error } },
      },
      "/api/inversions/{id}/attention": {
        parameters: [id("id")],
        get: {
          summary: "cross-attention map of each token, averaged over steps",
          responses: { 200: json("maps"), 404: error },
        },
      },
      "/api/inversions/{id}/edits": {
        parameters: [id("id")],
        post: {
          summary: "Prompt-to-Prompt edit",
          requestBody: { content: { "application/json": { schema: { $ref: "#/components/schemas/EditRequest" } } } },
          responses: { 202: accepted, 400: error, 404: error, 409: error, 415: error },
        },
      },
      "/api/edits/{id}": {
        parameters: [id("id")],
        get: { summary: "an edit with its image URLs", responses: { 200: json("edit"), 404: error, 409: error } },
      },
      "/api/edits/{id}/images/{name}": {
        parameters: [
          id("id"),
          {
            name: "name",
            in: "path",
            required: true,
            schema: { type: "string", pattern: "^(source|edit-[0-9]+)\\.png$" },
          },
        ],
        get: { responses: { 200: png, 404: error } },
      },
      "/api/edits/{id}/attention": { parameters: [id("id")], get: { responses: { 200: json("maps"), 404: error } } },
      "/api/jobs/{id}": {
        parameters: [id("id")],
        get: {
          summary: "a job",
          responses: {
            200: {
              description: "job",
              content: { "application/json": { schema: { $ref: "#/components/schemas/Job" } } },
            },
            404: error,
          },
        },
        delete: {
          summary: "cancel a job (an inversion keeps its resume state)",
          responses: { 200: json("job"), 404: error, 409: error },
        },
      },
      "/api/jobs/{id}/events": {
        parameters: [id("id")],
        get: {
          summary: "server-sent events: the job at every change, until it ends",
          responses: { 200: { description: "events", content: { "text/event-stream": {} } }, 404: error },
        },
      },
      "/api/openapi.json": { get: { responses: { 200: json("this document") } } },
    },
  };
}
