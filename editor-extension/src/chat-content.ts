// What the user sends in one chat turn: the question, attached code as fenced blocks and
// pasted/dropped/attached images, as `mlx/chat` content (a string, or OpenAI-style parts when
// there are images).
import type { ContentPart, ModelEntry } from "./protocol";

export interface ContextItem {
  label: string;
  language: string;
  text: string;
}

export interface ImageAttachment {
  name: string;
  /** data:image/png;base64,... */
  dataUrl: string;
}

/** The sidecar's default `limits.max_image_bytes` (decoded); checked here first so the user
 * hears about a too-big image when attaching it, not after sending. */
export const MAX_IMAGE_BYTES = 8 << 20;
export const IMAGE_TYPES = ["image/png", "image/jpeg"];

/** Decoded bytes of a base64 data: URL. */
export function dataUrlBytes(url: string): number {
  const payload = url.slice(url.indexOf(",") + 1);
  return Math.floor((payload.length * 3) / 4) - (payload.endsWith("==") ? 2 : payload.endsWith("=") ? 1 : 0);
}

/** Why an image cannot be attached, or undefined when it can. */
export function imageProblem(name: string, dataUrl: string): string | undefined {
  const type = /^data:([^;,]+);base64,/.exec(dataUrl)?.[1];
  if (!type || !IMAGE_TYPES.includes(type)) return `${name} is not a PNG or JPEG image.`;
  const bytes = dataUrlBytes(dataUrl);
  if (bytes > MAX_IMAGE_BYTES) {
    const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
    return `${name} is ${mib(bytes)}; images of at most ${mib(MAX_IMAGE_BYTES)} can be sent.`;
  }
  return undefined;
}

/** The user turn sent to the model: attached context as fenced blocks, then the question. */
export function userContent(text: string, context: ContextItem[]): string {
  const blocks = context.map((c) => `${c.label}:\n\`\`\`${c.language}\n${c.text}\n\`\`\``);
  return [...blocks, text].join("\n\n");
}

/** `mlx/chat` content: a plain string without images (so `@workspace` and text models work as
 * before), else a text part followed by one image_url part per image. */
export function userMessageContent(
  text: string,
  context: ContextItem[],
  images: ImageAttachment[],
): string | ContentPart[] {
  const body = userContent(text, context);
  if (!images.length) return body;
  return [
    { type: "text", text: body },
    ...images.map((i): ContentPart => ({ type: "image_url", image_url: { url: i.dataUrl } })),
  ];
}

/** How many images a message's content carries. */
export function imageCount(content: string | ContentPart[] | null | undefined): number {
  return Array.isArray(content) ? content.filter((p) => p.type === "image_url").length : 0;
}

/** A content without its images (text parts joined): what is kept across restarts, since
 * workspace state is no place for megabytes of base64. */
export function withoutImages(content: string | ContentPart[] | null | undefined): string {
  if (!Array.isArray(content)) return content ?? "";
  const text = content.map((p) => p.text ?? "").join("");
  const n = imageCount(content);
  return n ? `${text}\n\n[${n} image${n > 1 ? "s" : ""} not kept]` : text;
}

/** What "Download a vision model…" searches the Hub for. */
export const VISION_QUERY = "qwen2-vl";

/** The chat model a request goes to, and whether it takes images; undefined: not known. */
export function visionProblem(model: string, models: ModelEntry[]): { message: string; vision?: string } | undefined {
  const entry = models.find((m) => m.id === model);
  if (!entry || entry.kind === "vision") return undefined;
  const vision = models.find((m) => m.kind === "vision")?.id;
  return {
    message: `${model} is a text-only model and cannot see images. ${
      vision ? `Switch to ${vision} (a vision model) to send them.` : "Download a vision model to send them."
    }`,
    vision,
  };
}
